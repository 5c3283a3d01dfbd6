#!/usr/bin/env python3
"""Prints `N passed, N failed` over the test cases of the given Bazel targets.

Bazel's own summary counts targets; we count the cases inside them (from each
target's test.xml). A target that failed without a failing case in its XML
(a crash, a timeout, a build error, no XML at all) counts as one failure, so
nothing can fail silently.

usage: count_tests.py TESTLOGS_DIR TARGETS_FILE FAILED_TARGETS_FILE
"""
import pathlib
import sys
import xml.etree.ElementTree as ET


def xml_for(testlogs, target):
    pkg, _, name = target.lstrip("/").partition(":")
    return pathlib.Path(testlogs) / pkg / name / "test.xml"


def main(testlogs, targets_file, failed_file):
    targets = [l.strip() for l in open(targets_file) if l.strip()]
    failed_targets = {l.strip() for l in open(failed_file) if l.strip()}
    passed = failed = 0
    for target in targets:
        xml = xml_for(testlogs, target)
        bad = 0
        if target not in failed_targets or xml.exists():
            try:
                root = ET.parse(xml).getroot()
                for case in root.iter("testcase"):
                    if case.find("failure") is not None or case.find("error") is not None:
                        bad += 1
                    elif case.find("skipped") is None and case.get("status") != "notrun":
                        passed += 1
            except (OSError, ET.ParseError):
                pass
        if target in failed_targets and bad == 0:
            bad = 1
        failed += bad
    print(f"{passed} passed, {failed} failed")


if __name__ == "__main__":
    main(*sys.argv[1:4])
