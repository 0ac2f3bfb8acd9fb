#!/usr/bin/env python3
"""The 'protection' demo (also: shmkit demo protection). Run: python3 demos/protection.py"""
import sys

from toolkit.measure.stories import STORIES
from toolkit.report.story import render_text

render_text(STORIES["protection"](*sys.argv[1:]), sys.stdout)
