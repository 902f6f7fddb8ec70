// The service worker (PROTOCOL §8.3): shows the hub's Web Push messages and opens the page they
// name. A message carries a title, at most a camera id or the kind of request, and a page: never
// footage. Nothing is cached here: the owner UI always talks to the hub itself.

self.addEventListener("push", (event) => {
  let msg = { title: "camhub", body: "", url: "/" };
  try {
    msg = { ...msg, ...event.data.json() };
  } catch {
    // A message that is not our JSON still tells the owner something happened.
  }
  event.waitUntil(self.registration.showNotification(String(msg.title).slice(0, 120), {
    body: String(msg.body || "").slice(0, 200),
    tag: msg.event || "camhub",
    icon: "/ui/icon.svg",
    data: { url: typeof msg.url === "string" && msg.url.startsWith("/") ? msg.url : "/" },
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL(event.notification.data?.url || "/", self.location.origin).href;
  event.waitUntil((async () => {
    const open = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const same = open.find((c) => new URL(c.url).origin === self.location.origin);
    if (same) {
      await same.focus();
      return same.navigate ? same.navigate(url) : null;
    }
    return self.clients.openWindow(url);
  })());
});
