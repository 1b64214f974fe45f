"""Test suite for ticketflow."""
