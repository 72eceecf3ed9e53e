# fuzz: filled in by its area
