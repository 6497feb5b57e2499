"""Datasets: on-disk layouts, synthesis of the embedded sets and the decoded-audio cache."""
