"""The ground floor: what every app may use and that knows no app (the AWS gateway, loop helpers, API shapes)."""
