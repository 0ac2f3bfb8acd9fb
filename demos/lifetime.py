#!/usr/bin/env python3
"""The 'lifetime' demo (also: shmkit demo lifetime). Run: python3 demos/lifetime.py"""
import sys

from toolkit.measure.stories import STORIES
from toolkit.report.story import render_text

render_text(STORIES["lifetime"](*sys.argv[1:]), sys.stdout)
