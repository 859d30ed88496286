"""The learning loop's capture store: which judged parts to keep (``select``), the store on
disk within its byte budget (``store``), the daemon's side that writes off the verdict's path
(``capturer``), and the export to the eval layout for a quality engineer (``export``)."""
