"""One module (or folder) per system. Each declares a factory; drivers are imported on first use."""
