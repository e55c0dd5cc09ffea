"""Reports a person reads: the run summary in the terminal and the funnel page."""
