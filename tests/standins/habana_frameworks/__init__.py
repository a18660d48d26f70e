"""Stand-in for Intel Gaudi's habana_frameworks (tests only): hccl runs on gloo."""
