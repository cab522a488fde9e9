"""Every change to employee records, delivered: the feed (pull), streams and webhooks (push).

The audit trail (app.employees.history) is the one event log: all of them read it, oldest
first, in an order no late commit can overtake.
"""
