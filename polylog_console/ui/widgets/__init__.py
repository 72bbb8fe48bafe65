"""Small widgets of the console: each renders state it is given, none decides anything."""
