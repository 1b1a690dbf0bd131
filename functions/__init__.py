"""The function SDK, the function server (Knative's HTTP contract) and the builtin functions."""
