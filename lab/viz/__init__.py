"""lab.viz: reading and showing. It reads a run folder (its schema: lab.runfolder) or any
capture and never starts anything, so a notebook can use it without root: decoding and
decrypting captures with our own lab.ike/lab.esp and the exported keys (decode, analysis, keys,
run; tcpstreams for IKE and ESP in TCP streams, RFC 9329), figures legible when projected
(figures: the ladder, header layouts, the rekey timeline, MTU, topology), narration of what
happened (narrate, explain), `diagnose` (an evidence object and an ordered list of detectors),
the live tap (live), a run folder's report.html (html, its page in static/) and the archive to
take home (pack).

Above lab.ike, lab.esp and lab.conf; beside lab.net, whose files it reads.
"""
