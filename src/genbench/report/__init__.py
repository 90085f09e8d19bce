"""Reports: figures and tables from metric results."""
