/* The least any recorder pays to read RTSP through libavformat: av_read_frame in a C loop.

   bench/library_floor.py builds this twice, against PyAV's bundled FFmpeg and against the system's,
   and runs both beside a PyAV demux loop and `ffmpeg -c copy -f null` on the same camera. The
   FFmpeg types are used only through pointers, so no headers are needed and one source links
   against either library version.

   Usage: demux_loop RTSP_URL   (until SIGINT or SIGTERM; prints the packet count to stderr) */
#include <signal.h>
#include <stdio.h>

int avformat_network_init(void);
int av_dict_set(void **pm, const char *key, const char *value, int flags);
int avformat_open_input(void **ps, const char *url, const void *fmt, void **options);
int avformat_find_stream_info(void *ic, void **options);
void *av_packet_alloc(void);
int av_read_frame(void *s, void *pkt);
void av_packet_unref(void *pkt);

static volatile sig_atomic_t stop = 0;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv) {
    void *ic = NULL, *opts = NULL, *pkt;
    long packets = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: %s RTSP_URL\n", argv[0]);
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    avformat_network_init();
    /* The same options bench/pyav_floor.py and the hub's RtspSource give the demuxer. */
    av_dict_set(&opts, "rtsp_transport", "tcp", 0);
    av_dict_set(&opts, "max_delay", "500000", 0);
    if (avformat_open_input(&ic, argv[1], NULL, &opts) < 0 || avformat_find_stream_info(ic, NULL) < 0) {
        fprintf(stderr, "demux_loop: cannot open %s\n", argv[1]);
        return 1;
    }
    pkt = av_packet_alloc();
    while (!stop && av_read_frame(ic, pkt) >= 0) {
        packets++;
        av_packet_unref(pkt);
    }
    fprintf(stderr, "%ld packets\n", packets);
    return 0;
}
