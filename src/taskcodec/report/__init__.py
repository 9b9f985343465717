"""Tables, plots and figures that summarise an evaluation."""
