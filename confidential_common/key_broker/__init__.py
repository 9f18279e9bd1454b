"""Where a sealed model's key comes from: a Trustee KBS, the in-guest CDH, or a dev file."""
