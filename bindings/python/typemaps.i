/* Python: arrays cross through the buffer protocol (numpy arrays, array.array, ...), C
 * contiguous and of exactly the element type; None is an absent array. */
%fragment("swb_buffer", "header") %{
static int swb_get_buffer(PyObject* obj, Py_buffer* view, Py_ssize_t itemsize,
                          const char* formats, int writable, const char* function) {
  const char* f;
  if (obj == Py_None) return 0; /* view stays empty: (NULL, 0) */
  if (PyObject_GetBuffer(obj, view,
                         PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) != 0)
    return -1;
  f = view->format ? view->format : "B";
  if (*f == '<' || *f == '=' || *f == '@') ++f;
  if (view->itemsize != itemsize || !strchr(formats, *f) || f[1] != '\0') {
    PyErr_Format(PyExc_TypeError,
                 "%s: expected a C-contiguous array of %zd-byte items (format %s), got format "
                 "'%s' with %zd-byte items",
                 function, itemsize, formats, view->format ? view->format : "B", view->itemsize);
    PyBuffer_Release(view);
    view->obj = NULL;
    return -1;
  }
  return 0;
}
%}

%define SWB_PY_BUFFER(CTYPE, NAME, ITEMSIZE, FORMATS, WRITABLE)
%typemap(arginit) (CTYPE* NAME, size_t LEN) "memset(&view$argnum, 0, sizeof(view$argnum));"
%typemap(in, fragment="swb_buffer") (CTYPE* NAME, size_t LEN) (Py_buffer view) {
  if (swb_get_buffer($input, &view, ITEMSIZE, FORMATS, WRITABLE, "$symname") != 0) SWIG_fail;
  $1 = ($1_ltype)view.buf;
  $2 = (size_t)(view.len / ITEMSIZE);
}
%typemap(freearg) (CTYPE* NAME, size_t LEN) {
  if (view$argnum.obj) PyBuffer_Release(&view$argnum);
}
%enddef

SWB_PY_BUFFER(float, OUT_F32, 4, "f", 1)
SWB_PY_BUFFER(const float, IN_F32, 4, "f", 0)
SWB_PY_BUFFER(const int32_t, IN_I32, 4, "i", 0)
SWB_PY_BUFFER(int32_t, OUT_I32, 4, "i", 1)
SWB_PY_BUFFER(int64_t, OUT_I64, 8, "lq", 1)
