"""Patient layer: what a patient sees of their own record across facilities."""
