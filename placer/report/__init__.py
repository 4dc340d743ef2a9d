"""Reports: terminal tables, Markdown, plan JSON."""
