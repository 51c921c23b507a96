"""What the tests share: real processes, config files and an Apprise sink on loopback."""
