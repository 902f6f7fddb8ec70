// Query parameters inside the #hash route (e.g. #/timeline?camera=front&t=1763900000).
export function hashParams() {
  const i = location.hash.indexOf("?");
  return new URLSearchParams(i < 0 ? "" : location.hash.slice(i + 1));
}

export function cameraOptions(cameras, selected) {
  return cameras.map((c) => {
    const opt = document.createElement("option");
    opt.value = c.id;
    opt.textContent = c.name || c.id;
    if (c.id === selected) opt.selected = true;
    return opt;
  });
}

// Configured cameras plus any camera that still has footage (removed from the config later).
export function allCameras(data) {
  const out = [...data.cameras];
  for (const id of data.recorded || []) if (!out.some((c) => c.id === id)) out.push({ id, name: id });
  return out;
}
