"""Lensing physics and image formation: PSF models, Sersic light, pixel grids and convolution,
the SIE + external shear lens, and the batched arc renderer. Torch throughout (CPU or CUDA),
float32 by default; angles in arcsec, fluxes in nanomaggies."""
