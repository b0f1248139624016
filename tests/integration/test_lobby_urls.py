"""One lobby grammar for every transport (issue 9 item 1, issue 10): the
same table of good and bad URLs, legacy paths and room tokens minted with
Python's jwt, answered with the same status over WebSocket and, through
headless Chromium in a private network namespace, WebTransport.  The
scenario lives in wt_scenario.py (scenario_lobby_table)."""

import test_webtransport as twt

import harness as h


@h.timeout(150)
def test_same_answer_on_both_transports():
    twt._scenario("lobby_table", limit=140)
