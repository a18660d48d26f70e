"""Every file the analysis reads enters here, in one pipeline: files -> records -> frames.

* :mod:`analysis.load.reader`: files -> records (collscale JSON Lines and
  CSV, read around damage; other tools' logs through
  :mod:`analysis.load.importers`);
* :mod:`analysis.load.points`: records -> the points frame (one row per
  measured point of a size sweep);
* :mod:`analysis.load.replicate_runs`: records -> the frame of replication's
  training steps.

The analysis that follows (sanitise, fit, model share, report) takes frames.
"""
