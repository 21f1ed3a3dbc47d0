"""The nurse API and page (FastAPI): ``create_app`` in :mod:`alerting.api.app`.

Routes in one module each (patients, observations, devices, alerts, proposals, events,
audit), login in :mod:`alerting.api.auth`, problem details in
:mod:`alerting.api.problems`, authorisation and audit in :mod:`alerting.api._context`,
``wardwatch serve`` in :mod:`alerting.api.serve`. See ``docs/api.md`` ("Nurse API").
"""
