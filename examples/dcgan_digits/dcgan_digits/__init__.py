"""A user package for advnets: DCGAN-style nets for the 8x8 digits, and the configs that train them."""
