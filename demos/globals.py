#!/usr/bin/env python3
"""The 'globals' demo (also: shmkit demo globals). Run: python3 demos/globals.py"""
import sys

from toolkit.measure.stories import STORIES
from toolkit.report.story import render_text

render_text(STORIES["globals"](*sys.argv[1:]), sys.stdout)
