"""The console's controllers: each owns one concern of the screen (panels, the feed's rows, the
diff, actions, the clipboard, the theme) and turns core state and worker messages into widget
updates. None holds logic core should own; none runs monitor code off the monitor's thread."""
