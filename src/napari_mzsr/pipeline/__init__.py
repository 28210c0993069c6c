"""From a user's image and options to a super-resolved array: checked options, the
adapted model, single images, stacks and lazy (dask) arrays."""
