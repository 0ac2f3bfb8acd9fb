#!/usr/bin/env python3
"""The 'namespaces' demo (also: shmkit demo namespaces). Run: python3 demos/namespaces.py"""
import sys

from toolkit.measure.stories import STORIES
from toolkit.report.story import render_text

render_text(STORIES["namespaces"](*sys.argv[1:]), sys.stdout)
