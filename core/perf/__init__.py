"""What `python -m core bench-ui` measures the running app with (not used by the app itself).

proc.py     CPU seconds of a process tree from /proc (idle server CPU)
inputs.py   the benchmark scans: a 155-slice NIfTI volume and the same as a DICOM series (no PHI)
server.py   the app as a subprocess (`python -m core serve`) in a throwaway home
browser.py  Playwright on Debian's chromium: page ready, upload -> verdict, PACS -> verdict
"""
