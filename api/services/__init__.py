"""The API's logic, kept out of the route functions: each module serves one router."""
