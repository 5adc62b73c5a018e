"""Request, responses, datastructures and the exception tree."""
