"""The help desk's memory over HTTP: classify tickets, find similar ones (``ticketflow serve``)."""
