#!/usr/bin/env python3
"""The 'permissions' demo (also: shmkit demo permissions). Run: python3 demos/permissions.py"""
import sys

from toolkit.measure.stories import STORIES
from toolkit.report.story import render_text

render_text(STORIES["permissions"](*sys.argv[1:]), sys.stdout)
