"""Pure domain core: specs, resources, scheduling, protocol types. No I/O."""
