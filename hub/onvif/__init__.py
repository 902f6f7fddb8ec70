"""ONVIF cameras: found by WS-Discovery, their streams read from the media service, their doorbell
presses and motion followed through a pull-point subscription.

    discovery.py   WS-Discovery Probes (WSDiscovery's messages; untrusted answers checked with defusedxml)
    device.py      connect with WS-UsernameToken digests, GetProfiles/GetStreamUri (onvif-zeep-async)
    events.py      CreatePullPointSubscription, PullMessages, Renew; resubscribe after a reboot;
                   topics → presses and camera motion (the topics Home Assistant's parsers map)

The protocol is the libraries' (the same ones Home Assistant uses); this package only adapts them
to the hub. Everything a camera sends is untrusted LAN input: zeep parses SOAP with lxml with
entity resolution off and DTD entities forbidden, and `device.py` turns lxml's "huge tree" mode
(which onvif-zeep-async enables) back off, so libxml2's depth and text-node limits hold again
(the library parses in recover mode: a tree past them is cut short rather than refused); one
answer over 1 MiB is refused while it is read (`device.BoundedOnvifCamera`).
"""
