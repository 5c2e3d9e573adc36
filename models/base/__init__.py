"""The bottom floor of :mod:`models`: what every other floor uses (choices and bounds of settings,
atomic files, files read as data only, words for the user, logs, progress bars, devices)."""
