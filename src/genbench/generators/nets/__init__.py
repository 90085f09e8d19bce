"""Networks of genbench's generators: the flow U-Net (``unet``)."""
