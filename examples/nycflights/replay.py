#!/usr/bin/env python3
"""Monitoring example, part 2: replay May-September 2013 through a running `sluice serve`.

Each request carries 500 flights in time order (MLflow `dataframe_split`, request id
`<month>-<n>`); the server logs every scored row. The arrival delays, which a real system would
learn hours later, are written to data/truth.csv keyed by (request_id, row) for the monitor's
performance check. Standard library only.

    python3 examples/nycflights/replay.py http://127.0.0.1:8080 [first_month [last_month]]
"""
import csv
import json
import sys
import urllib.request
from pathlib import Path

URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
FIRST = int(sys.argv[2]) if len(sys.argv) > 2 else 5
LAST = int(sys.argv[3]) if len(sys.argv) > 3 else 9
DATA = Path(__file__).resolve().parent / "data"
COLUMNS = ["hour", "dep_delay", "carrier", "origin", "dest", "distance",
           "temp", "humid", "wind_speed", "visib", "precip"]


def num(v):
    return None if v in ("", "NA") else float(v)


weather = {}
with open(DATA / "weather.csv", newline="") as f:
    for w in csv.DictReader(f):
        weather[(w["origin"], w["time_hour"])] = w

flights = []
with open(DATA / "flights.csv", newline="") as f:
    for r in csv.DictReader(f):
        if FIRST <= int(r["month"]) <= LAST and r["arr_delay"] not in ("", "NA"):
            flights.append(r)
flights.sort(key=lambda r: (r["time_hour"], r["carrier"], int(r["flight"]), r["origin"], r["dest"]))

truth = open(DATA / "truth.csv", "w", newline="")
truth.write("request_id,row,late\n")
batch, sent = [], 0


def send(rows):
    global sent
    month = rows[0]["month"]
    request_id = f"{int(month):02d}-{sent}"
    data = []
    for r in rows:
        w = weather.get((r["origin"], r["time_hour"]), {})
        data.append([num(r["hour"]), num(r["dep_delay"]), r["carrier"], r["origin"], r["dest"],
                     num(r["distance"]), num(w.get("temp", "")), num(w.get("humid", "")),
                     num(w.get("wind_speed", "")), num(w.get("visib", "")), num(w.get("precip", ""))])
    body = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": data}}).encode()
    request = urllib.request.Request(URL + "/invocations", data=body, headers={
        "content-type": "application/json", "x-request-id": request_id})
    with urllib.request.urlopen(request) as response:
        assert response.status == 200, response.read()
    for i, r in enumerate(rows):
        truth.write(f"{request_id},{i},{str(float(r['arr_delay']) > 15).lower()}\n")
    sent += 1


for r in flights:
    batch.append(r)
    if len(batch) == 500:
        send(batch)
        batch = []
if batch:
    send(batch)
truth.close()
print(f"sent {len(flights)} flights in {sent} requests; labels in {DATA / 'truth.csv'}")
