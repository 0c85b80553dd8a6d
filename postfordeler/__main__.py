from postfordeler.cli import app

app()
