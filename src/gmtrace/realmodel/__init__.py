"""A model of real photographs, fitted on real images only: each image's
self-description (`selfdesc`) and a density over real images' descriptions
(`density`), which scores how unlike a photograph an image is."""
