/*
 * JPEG decoding for mislas through libjpeg-turbo's libjpeg API (the decoder of Pillow's
 * `Image.open(f).convert("RGB")`, with Pillow's settings: the default ISLOW IDCT and fancy
 * upsampling). Only a box of the image is decoded: rows above it are skipped
 * (`jpeg_skip_scanlines`), columns outside it are not transformed (`jpeg_crop_scanline`), and
 * decoding stops after its last row. Called from `src/data/jpeg.rs`, which documents the API.
 *
 * Errors never exit the process: libjpeg's `error_exit` long-jumps back here and the message
 * is copied into the caller's buffer. Warnings are ignored, as Pillow does, except
 * "premature end of JPEG file" (a truncated file), which is an error, as it is in Pillow.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#ifndef LIBJPEG_TURBO_VERSION
#error "mislas needs libjpeg-turbo's libjpeg (Debian: libjpeg62-turbo-dev), not another libjpeg"
#endif

struct mislas_err {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
};

static void mislas_error_exit(j_common_ptr cinfo) {
  struct mislas_err *e = (struct mislas_err *)cinfo->err;
  longjmp(e->jump, 1);
}

static void mislas_emit_message(j_common_ptr cinfo, int level) {
  /* level < 0: a warning. A truncated file is an error (Pillow: "image file is truncated");
   * other warnings (e.g. extraneous bytes before a marker) are ignored, as Pillow does. */
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    struct mislas_err *e = (struct mislas_err *)cinfo->err;
    longjmp(e->jump, 1);
  }
}

static void copy_message(j_common_ptr cinfo, char *err, size_t errlen) {
  char msg[JMSG_LENGTH_MAX];
  cinfo->err->format_message(cinfo, msg);
  snprintf(err, errlen, "%s", msg);
}

/* Is there an end-of-image marker (FF D9) at or after `from`? Entropy-coded data never holds
 * FF D9 (an FF there is followed by 00 or a restart marker), so a file without one after its
 * first scan header was cut short. Searched from the end: it is normally the last 2 bytes. */
static int has_eoi_after(const unsigned char *buf, size_t len, size_t from) {
  if (len < 2) return 0;
  for (size_t i = len - 1; i > from; i--) {
    if (buf[i] == 0xD9 && buf[i - 1] == 0xFF) return 1;
  }
  return 0;
}

/* Reads the header. Returns 0 and the size, or -1 and a message. */
int mislas_jpeg_size(const unsigned char *buf, size_t len, uint32_t *width, uint32_t *height,
                     char *err, size_t errlen) {
  struct jpeg_decompress_struct c;
  struct mislas_err e;
  c.err = jpeg_std_error(&e.pub);
  e.pub.error_exit = mislas_error_exit;
  e.pub.emit_message = mislas_emit_message;
  if (setjmp(e.jump)) {
    copy_message((j_common_ptr)&c, err, errlen);
    jpeg_destroy_decompress(&c);
    return -1;
  }
  jpeg_create_decompress(&c);
  jpeg_mem_src(&c, buf, (unsigned long)len);
  jpeg_read_header(&c, TRUE);
  *width = c.image_width;
  *height = c.image_height;
  jpeg_destroy_decompress(&c);
  return 0;
}

/* PIL's `convert("RGB")` of a CMYK JPEG, which PIL reads with Adobe's inverted polarity
 * ("CMYK;I"): C' = 255 − C, …, then `cmyk2rgb` (libImaging/Convert.c):
 * nk = 255 − K', out = nk − MULDIV255(C', nk), MULDIV255(a, b) = ((t >> 8) + t) >> 8 with
 * t = a·b + 128. */
static void cmyk_row_to_rgb(const unsigned char *in, unsigned char *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int c = 255 - in[4 * i], m = 255 - in[4 * i + 1], y = 255 - in[4 * i + 2];
    int nk = in[4 * i + 3]; /* 255 − K' = K */
    int t;
    t = c * nk + 128;
    out[3 * i] = (unsigned char)(nk - (((t >> 8) + t) >> 8));
    t = m * nk + 128;
    out[3 * i + 1] = (unsigned char)(nk - (((t >> 8) + t) >> 8));
    t = y * nk + 128;
    out[3 * i + 2] = (unsigned char)(nk - (((t >> 8) + t) >> 8));
  }
}

/* Decodes columns x..x+w and rows y..y+h of the image into `out` (h rows of w RGB pixels,
 * w·3 bytes each). The box must lie inside the image (checked). Returns 0, or -1 and a
 * message. */
int mislas_jpeg_decode_box(const unsigned char *buf, size_t len, uint32_t x, uint32_t y,
                           uint32_t w, uint32_t h, unsigned char *out, char *err,
                           size_t errlen) {
  struct jpeg_decompress_struct c;
  struct mislas_err e;
  unsigned char *volatile row = NULL;
  c.err = jpeg_std_error(&e.pub);
  e.pub.error_exit = mislas_error_exit;
  e.pub.emit_message = mislas_emit_message;
  if (setjmp(e.jump)) {
    copy_message((j_common_ptr)&c, err, errlen);
    jpeg_destroy_decompress(&c);
    free(row);
    return -1;
  }
  jpeg_create_decompress(&c);
  jpeg_mem_src(&c, buf, (unsigned long)len);
  jpeg_read_header(&c, TRUE);
  if (!has_eoi_after(buf, len, len - c.src->bytes_in_buffer)) {
    snprintf(err, errlen, "truncated: no end-of-image marker after the image data");
    jpeg_destroy_decompress(&c);
    return -1;
  }
  int cmyk = c.jpeg_color_space == JCS_CMYK || c.jpeg_color_space == JCS_YCCK;
  c.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
  jpeg_start_decompress(&c);
  if (w == 0 || h == 0 || x > c.output_width || w > c.output_width - x ||
      y > c.output_height || h > c.output_height - y) {
    snprintf(err, errlen, "box %ux%u at (%u, %u) outside the %ux%u image", w, h, x, y,
             c.output_width, c.output_height);
    jpeg_destroy_decompress(&c);
    return -1;
  }
  /* One column of margin on each side, so that the box never starts or ends at the edge of the
   * decoded region, where fancy upsampling would lack its neighbour; libjpeg widens the
   * region further to whole iMCUs. */
  JDIMENSION xoff = x > 0 ? x - 1 : 0;
  JDIMENSION xend = x + w < c.output_width ? x + w + 1 : c.output_width;
  JDIMENSION cw = xend - xoff;
  if (xoff > 0 || cw < c.output_width) jpeg_crop_scanline(&c, &xoff, &cw);
  int comps = c.output_components;
  row = malloc((size_t)cw * (size_t)comps);
  if (!row) {
    snprintf(err, errlen, "out of memory");
    jpeg_destroy_decompress(&c);
    return -1;
  }
  /* Skip to one whole iMCU row above the box's, so that any edge effect of skipping stays
   * outside it. */
  JDIMENSION imcu = (JDIMENSION)c.max_v_samp_factor * (JDIMENSION)DCTSIZE;
  JDIMENSION start = (y / imcu) * imcu;
  start = start >= imcu ? start - imcu : 0;
  if (start > 0) jpeg_skip_scanlines(&c, start);
  size_t col = (size_t)(x - xoff) * (size_t)comps;
  while (c.output_scanline < y + h) {
    JDIMENSION line = c.output_scanline;
    JSAMPROW rows[1] = {row};
    if (jpeg_read_scanlines(&c, rows, 1) != 1) {
      snprintf(err, errlen, "no scanline %u", line);
      jpeg_destroy_decompress(&c);
      free(row);
      return -1;
    }
    if (line < y) continue;
    unsigned char *dst = out + (size_t)(line - y) * (size_t)w * 3;
    if (cmyk)
      cmyk_row_to_rgb(row + col, dst, w);
    else
      memcpy(dst, row + col, (size_t)w * 3);
  }
  if (c.output_scanline < c.output_height)
    jpeg_abort_decompress(&c);
  else
    jpeg_finish_decompress(&c);
  jpeg_destroy_decompress(&c);
  free(row);
  return 0;
}
