"""Owner notifications (PROTOCOL.md §8): Home Assistant over MQTT and Web Push to the owner's browsers.

    audit entries (ConsentService.record)  ─┐
    camera events (doorbell press, motion) ─┼─> Notifier (service.py) ─> per channel: bounded queue
    camera online/offline (watch loop)     ─┘     settings.py decides       ├─ MqttChannel (mqtt.py)
                                                  what is sent              └─ PushChannel (push.py)

Nothing here sends media: a notification names an event and, with details on, a camera id or an
agency's name; thumbnails and snapshots stay behind the owner session and the gate
(hub/consent/gate.py lists MQTT and Web Push as ways out that carry no footage).

A channel never blocks its producers: `offer()` is synchronous and non-blocking, a full queue drops
the notification and counts it, and each channel's worker retries with backoff on its own task
(channel.py). The daemon starts the Notifier after the consent service and the cameras, and stops it
before them; every task it runs is a supervisor task named `notify:*`.
"""
