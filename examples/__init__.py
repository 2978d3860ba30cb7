"""Examples of software that uses the gateway from the outside (they import nothing from it)."""
