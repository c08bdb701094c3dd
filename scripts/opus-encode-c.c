/* Encoder CPU of the reference libopus (C), for scripts/bench-opus-c.
 *
 *   opus-encode-c TALK.wav COMPLEXITY [BITRATE]
 *
 * TALK.wav: 16-bit mono PCM at 16 kHz with a 44-byte header (what the
 * opus_ceiling example writes). Encodes it in 20 ms frames at 16 kHz,
 * VoIP application, VBR, like natter's phone, and prints the thread's CPU
 * time per frame. Built against libopus.so.0 (Debian's libopus0, which
 * opus-tools brings) with the few prototypes it needs declared here, so no
 * libopus-dev headers are required. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef struct OpusEncoder OpusEncoder;
OpusEncoder *opus_encoder_create(int fs, int channels, int application, int *error);
int opus_encoder_ctl(OpusEncoder *st, int request, ...);
int opus_encode(OpusEncoder *st, const short *pcm, int frame_size, unsigned char *data,
                int max_data_bytes);

enum { APPLICATION_VOIP = 2048, SET_BITRATE = 4002, SET_COMPLEXITY = 4010, FRAME = 320 };

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: opus-encode-c TALK.wav COMPLEXITY [BITRATE]\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0) {
        perror(argv[1]);
        return 1;
    }
    long size = ftell(f);
    long samples = (size - 44) / 2;
    short *pcm = malloc(samples > 0 ? samples * sizeof(short) : 1);
    if (samples <= 0 || !pcm || fseek(f, 44, SEEK_SET) != 0 ||
        fread(pcm, sizeof(short), samples, f) != (size_t)samples) {
        fprintf(stderr, "%s: cannot read the samples\n", argv[1]);
        return 1;
    }
    fclose(f);
    int err = 0;
    OpusEncoder *enc = opus_encoder_create(16000, 1, APPLICATION_VOIP, &err);
    if (!enc || err != 0) {
        fprintf(stderr, "opus_encoder_create failed: %d\n", err);
        return 1;
    }
    opus_encoder_ctl(enc, SET_BITRATE, argc > 3 ? atoi(argv[3]) : 24000);
    opus_encoder_ctl(enc, SET_COMPLEXITY, atoi(argv[2]));
    unsigned char out[1500];
    long frames = samples / FRAME, bytes = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    for (long i = 0; i < frames; i++) {
        int n = opus_encode(enc, pcm + i * FRAME, FRAME, out, sizeof out);
        if (n < 0) {
            fprintf(stderr, "opus_encode failed: %d\n", n);
            return 1;
        }
        bytes += n;
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    double us = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3 / frames;
    printf("encode: %.1f µs CPU per 20 ms frame (%ld frames, %ld bytes)\n", us, frames, bytes);
    return 0;
}
