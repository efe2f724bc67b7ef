"""Training: pre-tokenization, the masked-diffusion objective, the SFT and ParaRL recipes."""
