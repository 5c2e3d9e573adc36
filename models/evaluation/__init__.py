"""Song-level votes and scores of a classifier, and the result files of a prediction."""
