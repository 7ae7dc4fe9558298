"""What the main window does: layout, menus, the *_control helpers, kiosk, profiles, pre-flight checks."""
