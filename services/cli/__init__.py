"""The mlbus command: a thin front end over topics; it imports only services.bus."""
