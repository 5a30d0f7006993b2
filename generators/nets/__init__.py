"""Networks of the generator families, one per file, 2D or 3D from ``spatial_dims``.

Constructors take only shapes and widths; families decide training and sampling. Import each
from its own module (``synthcohort.generators.nets.denoiser_unet``, …): this package
re-exports nothing, so no list here can fall out of date.
"""
