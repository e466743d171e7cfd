"""What each git host does around our hooks, one module per host (install and check use them)."""
