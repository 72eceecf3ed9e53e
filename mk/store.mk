# store: filled in by its area
